"""The development harness: embedded broker and Redis, worker launcher, load producer, bench, soak,
demo and the quality evaluation. Production (the worker, stream/) imports none of it."""
