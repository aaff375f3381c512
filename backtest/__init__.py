"""Offline runners: a recorded traffic file through the detector (replay), two configs side by side
(compare), and the scorer of decisions against labelled traffic. No broker, no Redis."""
