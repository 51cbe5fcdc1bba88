"""The MoQ relay: routing, cache, priority fan-out (issue: `moq relay`)."""
