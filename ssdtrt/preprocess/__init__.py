"""Preprocessing stages: images → network input (`host`: resize / normalize / layout on the host; `stages`: the
`Preprocessor` stage a model's manifest asks for)."""
