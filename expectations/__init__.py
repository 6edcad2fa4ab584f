"""Great Expectations suites for each warehouse layer, and the helpers that run them."""

from expectations.checks import gx_asset_check
from expectations.validate import FailedExpectation, ValidationSummary, validate_frame, validate_table

__all__ = ["FailedExpectation", "ValidationSummary", "gx_asset_check", "validate_frame", "validate_table"]
