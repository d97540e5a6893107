"""Feature modules only the benchmark loads (`bench.queue_app`, `bench.queue_worker`)."""
