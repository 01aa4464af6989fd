"""Test helpers: a real `recotorch serve` child process, synthetic models and catalogues, a throwaway PostgreSQL."""
