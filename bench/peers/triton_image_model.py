"""Triton Python-backend model doing what Yunmo's image pipeline does, the way Triton users write it: decode
each JPEG with Pillow, resize the shorter side to 256 (bilinear), centre-crop 224, scale to [-1, 1], run
EfficientNet-Lite0 with onnxruntime (CPU, one intra-op thread), softmax, top 5 with labels.
Input `image` BYTES [N]; outputs `labels` BYTES [N, 5], `scores` FP32 [N, 5]."""
import io
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from PIL import Image


def preprocess(data):
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    x = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)


class TritonPythonModel:
    def initialize(self, args):
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.labels = np.array([f"class {i}".encode() for i in range(1000)], dtype=object)

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)
            x = np.stack([preprocess(bytes(data)) for data in images])
            logits = self.session.run(["logits"], {"input": x})[0]
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities = exp / exp.sum(axis=1, keepdims=True)
            top = np.argsort(-probabilities, axis=1, kind="stable")[:, :5]
            scores = np.take_along_axis(probabilities, top, axis=1).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("labels", self.labels[top]), pb_utils.Tensor("scores", scores)]))
        return responses
