"""Operations: settings, logging, the `stoflow` CLI, embedded services, the marketplace sandbox, seed data."""
