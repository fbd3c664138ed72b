"""KServe Python model server (the kserve SDK) serving every MODEL_DIR/<name>.onnx with onnxruntime
(CPU, one intra-op thread) over the V2 REST protocol, bound to 127.0.0.1 only.

The SDK binds its REST server to 0.0.0.0 by itself; this launcher makes uvicorn bind loopback instead.
Run: python kserve_server.py --model_dir DIR --http_port PORT
"""
import argparse
import glob
import os
import uuid

import onnxruntime as ort
import uvicorn

import kserve.protocol.rest.server as rest_server
from kserve import InferOutput, InferResponse, Model, ModelServer, model_server


class LoopbackConfig(uvicorn.Config):
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


rest_server.uvicorn.Config = LoopbackConfig


class OnnxModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True

    def predict(self, payload, headers=None, response_headers=None):
        feed = {i.name: i.as_numpy() for i in payload.inputs}
        results = self.session.run(self.output_names, feed)
        outputs = []
        for name, array in zip(self.output_names, results):
            datatype = {"float32": "FP32", "int64": "INT64", "float64": "FP64", "int32": "INT32"}[str(array.dtype)]
            output = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
            output.set_data_from_numpy(array, binary_data=False)
            outputs.append(output)
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id or str(uuid.uuid4()))


parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--model_dir", required=True)
args, _ = parser.parse_known_args()

if __name__ == "__main__":
    models = [OnnxModel(os.path.splitext(os.path.basename(p))[0], p) for p in sorted(glob.glob(os.path.join(args.model_dir, "*.onnx")))]
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start(models)
