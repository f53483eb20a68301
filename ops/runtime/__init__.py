"""What starts processes: the `stoflow` CLI, the supervisor, embedded services, start-up."""
