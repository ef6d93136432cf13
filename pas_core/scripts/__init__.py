"""Developer entry points: `make run` (devrun), `make test` (testrun), Redis (redisctl)."""
