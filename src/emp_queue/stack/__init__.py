"""The all-in-one local stack (``emp up``) and its demo workload (``emp demo``)."""
