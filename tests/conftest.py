pytest_plugins = ["emp_queue.testing.pytest_plugin"]
