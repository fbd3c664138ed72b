"""TorchServe custom handler running the archived ONNX file with onnxruntime (CPU, one intra-op thread).

TorchServe has no V2 endpoint: requests go to POST /predictions/<model> with a KServe-V2-shaped JSON body,
and the answer is V2-shaped JSON. TorchServe may hand several requests to one handle() call; each gets
its own answer."""
import glob
import json
import os

import numpy as np
import onnxruntime as ort
from ts.torch_handler.base_handler import BaseHandler

NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
V2 = {np.dtype(v): k for k, v in NUMPY.items()}


class OnnxHandler(BaseHandler):
    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        path = glob.glob(os.path.join(model_dir, "*.onnx"))[0]
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.model_name = context.manifest["model"]["modelName"]
        self.initialized = True

    def handle(self, data, context):
        answers = []
        for row in data:
            body = row.get("body") or row.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            feed = {t["name"]: np.asarray(t["data"], dtype=NUMPY[t["datatype"]]).reshape(t["shape"]) for t in body["inputs"]}
            results = self.session.run(self.output_names, feed)
            answers.append({"model_name": self.model_name, "outputs": [
                {"name": n, "shape": list(r.shape), "datatype": V2[r.dtype], "data": r.reshape(-1).tolist()}
                for n, r in zip(self.output_names, results)]})
        return answers
