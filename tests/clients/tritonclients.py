"""One face over tritonclient.http and tritonclient.grpc, so every client test runs on both protocols.

`binary=True` sends tensors as HTTP binary data / gRPC raw_input_contents (what the clients do by default);
`binary=False` sends JSON `data` over HTTP and typed `contents` over gRPC (built with tritonclient's own
generated protobuf stubs, since tritonclient.grpc always sends raw)."""
import json

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.service_pb2 as pb
import tritonclient.grpc.service_pb2_grpc as pb_grpc
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

STATUS = {
    "http": {"not_found": "404", "invalid": "400", "unavailable": "503"},
    "grpc": {"not_found": "StatusCode.NOT_FOUND", "invalid": "StatusCode.INVALID_ARGUMENT", "unavailable": "StatusCode.UNAVAILABLE"},
}

TYPED_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def _ints(value):
    """protobuf's JSON form writes int64 as strings; make shapes numbers again."""
    if isinstance(value, dict):
        return {k: ([int(x) for x in v] if k == "shape" else _ints(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


class TypedResult:
    """Result of a typed-contents gRPC call, with as_numpy like tritonclient's results."""

    def __init__(self, response):
        self.response = response
        self.result = grpcclient.InferResult(response)

    def as_numpy(self, name):
        return self.result.as_numpy(name)

    def get_response(self):
        return {"id": self.response.id, "model_version": self.response.model_version}


class Client:
    def __init__(self, protocol, server):
        self.protocol = protocol
        self.status = STATUS[protocol]
        if protocol == "http":
            self.module = httpclient
            self.client = httpclient.InferenceServerClient(url=server.address, network_timeout=120)
        else:
            self.module = grpcclient
            self.client = grpcclient.InferenceServerClient(url=server.grpc_address)
            self.channel = grpc.insecure_channel(server.grpc_address, options=[("grpc.max_receive_message_length", 1 << 30)])
            self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def __getattr__(self, name):
        return getattr(self.client, name)

    def metadata(self, model, version=""):
        if self.protocol == "http":
            return self.client.get_model_metadata(model, model_version=version)
        return _ints(self.client.get_model_metadata(model, model_version=version, as_json=True))

    def server_metadata(self):
        if self.protocol == "http":
            return self.client.get_server_metadata()
        return self.client.get_server_metadata(as_json=True)

    def index(self):
        if self.protocol == "http":
            return self.client.get_model_repository_index()
        return self.client.get_model_repository_index(as_json=True).get("models", [])

    def infer(self, model, inputs, binary=True, outputs=None, class_count=0, model_version="", request_id=""):
        if self.protocol == "grpc" and not binary:
            return self._infer_typed(model, inputs, outputs, model_version, request_id)
        request_inputs = []
        for name, array in inputs.items():
            tensor = self.module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            if self.protocol == "http":
                tensor.set_data_from_numpy(array, binary_data=binary)
            else:
                tensor.set_data_from_numpy(array)
            request_inputs.append(tensor)
        requested = None
        if outputs:
            if self.protocol == "http":
                requested = [httpclient.InferRequestedOutput(n, binary_data=binary, class_count=class_count) for n in outputs]
            else:
                requested = [grpcclient.InferRequestedOutput(n, class_count=class_count) for n in outputs]
        return self.client.infer(model, request_inputs, outputs=requested, model_version=model_version, request_id=request_id)

    def _infer_typed(self, model, inputs, outputs, model_version, request_id):
        request = pb.ModelInferRequest(model_name=model, model_version=model_version, id=request_id)
        for name, array in inputs.items():
            datatype = np_to_triton_dtype(array.dtype)
            tensor = request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
            values = array.flatten().tolist()
            getattr(tensor.contents, TYPED_FIELD[datatype]).extend(values)
        for name in outputs or []:
            request.outputs.add(name=name)
        try:
            return TypedResult(self.stub.ModelInfer(request))
        except grpc.RpcError as error:
            raise InferenceServerException(msg=error.details(), status=str(error.code())) from None

    def response_field(self, result, field):
        response = result.get_response()
        if isinstance(response, dict):
            return response.get(field)
        return getattr(response, field)
