"""Write model/mobilesal_placeholder_v0.onnx: the PLACEHOLDER smoke model.

A 3->1 1x1 convolution with fixed weights followed by a sigmoid. It follows the model
contract (input ``input`` float32 [N,3,H,W] ImageNet-normalised RGB, output
``saliency_map`` float32 [N,1,H,W] in [0,1]) so the pipeline can be exercised without
real weights, but its output is a brightness curve, NOT saliency.

Usage: python scripts/make_placeholder_model.py [OUT]   (needs the `onnx` package)
The weights, opset and producer are fixed, so the file and its sha256 are stable.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build() -> onnx.ModelProto:
    # Luma-like weights on the normalised channels: brighter pixels -> higher "saliency".
    w = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1) * 2.0
    b = np.array([0.0], dtype=np.float32)
    graph = helper.make_graph(
        nodes=[
            helper.make_node("Conv", ["input", "w", "b"], ["logits"], kernel_shape=[1, 1]),
            helper.make_node("Sigmoid", ["logits"], ["saliency_map"]),
        ],
        name="mobilesal_placeholder_v0",
        inputs=[helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        outputs=[helper.make_tensor_value_info("saliency_map", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="vmaf-roi scripts/make_placeholder_model.py",
        producer_version="0",
        doc_string="PLACEHOLDER: not a saliency model. 1x1 conv + sigmoid with fixed weights.",
    )
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "model" / "mobilesal_placeholder_v0.onnx")
    out.write_bytes(build().SerializeToString())
    print(out)
