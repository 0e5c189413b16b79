"""Export: PyTorch SSD → ONNX (`raw` | `decoded` | `nms`), FP16 / INT8 Q/DQ variants, TensorRT lint.

    from ssdtrt.export.onnx_export import export_checkpoint       # checkpoint → .onnx + manifest .json
    from ssdtrt.export.precision import convert_fp16, quantize_int8
    from ssdtrt.export.calibration import CalibrationConfig
    from ssdtrt.export.lint import lint_onnx                       # TensorRT parser support check, no TensorRT

Submodules are imported on use (torch and onnxruntime load only when exporting).
"""
