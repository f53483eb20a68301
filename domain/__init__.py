"""Pure business rules of Stoflow: no I/O, and no imports from the other packages."""
