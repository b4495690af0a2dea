"""Op-based jobs: work that is not an asset (exports of query results, their cleanup)."""
