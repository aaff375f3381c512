"""Offline runners: a recorded traffic file through the detector (replay), two configs side by side
(compare), the scorer of decisions against labelled traffic (score) and the static-limit baseline
(baseline). No broker, no Redis."""
