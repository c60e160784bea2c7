"""`python -m agentmesh ...` is the same as the `agentmesh` console script."""

from agentmesh.cli import main

raise SystemExit(main())
