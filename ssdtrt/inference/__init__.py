"""One route from images to detections: stage protocol, batching, and the `Detector` that composes them."""
