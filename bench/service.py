"""placeholder"""
def add_arguments(p): pass
async def run(args): return 0
