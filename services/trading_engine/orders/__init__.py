"""Order management: the state machine, the store, the manager that moves orders."""
