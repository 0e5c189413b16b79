"""Preprocessing stages: images → network input (`host`: resize / normalize / layout on the host)."""
