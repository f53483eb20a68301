"""A marketplace that costs nothing: every step succeeds at once. Benchmarks only (bench/pipeline.py)."""

from __future__ import annotations

from workers.platforms.base import JobInput, ListingOutcome


class NoopAdapter:
    """Answer each command immediately with a listing id derived from the job, sending nothing anywhere."""

    def __init__(self, platform: str = "noop") -> None:
        self.platform = platform

    async def publish(self, job: JobInput) -> ListingOutcome:
        """Pretend to list the product: the id depends only on the job, so a retried run answers the same."""
        listing_id = f"{self.platform}-{job.job_id.hex}"
        return ListingOutcome(
            external_id=listing_id,
            url=f"https://{self.platform}.invalid/listing/{listing_id}",
            data={"noop": True},
        )

    async def update(self, job: JobInput) -> ListingOutcome:
        """Pretend to update the listing the job names."""
        return _current(job)

    async def delist(self, job: JobInput) -> ListingOutcome:
        """Pretend to end the listing the job names."""
        return _current(job)


def _current(job: JobInput) -> ListingOutcome:
    listing = job.listing or {}
    external_id = listing.get("external_id")
    url = listing.get("url")
    return ListingOutcome(
        external_id=external_id if isinstance(external_id, str) else None,
        url=url if isinstance(url, str) else None,
        data={"noop": True},
    )
