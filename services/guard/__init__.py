"""The guard: tier-one detectors, the policy that turns findings into an action, and its gRPC servicer."""
