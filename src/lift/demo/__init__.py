"""`lift demo`: the whole LIFT-vs-CLIP comparison on the embedded synthetic world."""

from lift.demo.pipeline import PROFILES, DemoConfig, DemoProfile, run_demo

__all__ = ["PROFILES", "DemoConfig", "DemoProfile", "run_demo"]
