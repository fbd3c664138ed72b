"""Runs one KServe Python SDK call against a server and prints what came back as JSON, for test_kserve.py.

It runs in its own Python process because the SDK's generated gRPC stubs register the V2 protobuf messages
(inference.ServerLiveRequest, ...) in protobuf's default pool under a different file name than tritonclient's
stubs do, and protobuf refuses the second registration: one process cannot import both `kserve` and
`tritonclient.grpc`.

Usage: python kserve_sdk.py '{"call": "rest_infer" | "grpc_infer" | "health" | "v1", "url": ..., "grpc": ..., ...}'"""
import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def tensor(x, binary):
    inp = InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def outputs_of(response):
    return {o.name: {"datatype": o.datatype, "shape": list(o.shape), "data": o.as_numpy().tolist()} for o in response.outputs}


async def rest_infer(args, x):
    binary = args["binary"]
    request = InferRequest(args["body_model"], [tensor(x, binary)], request_id=args.get("id"),
                           parameters={"binary_data_output": True} if binary else None)
    body, json_length = request.to_rest()
    header = json.loads(body[:json_length]) if json_length else body
    sent = {"binary": json_length is not None and json_length < len(body), "body_model_name": header["model_name"]}
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    headers = {}
    try:
        response = await client.infer(args["url"], request, model_name=args["path_model"], response_headers=headers)
    except httpx.HTTPStatusError as error:
        return {"sent": sent, "status": error.response.status_code, "body": error.response.json()}
    finally:
        await client.close()
    return {"sent": sent, "status": 200, "model_name": response.model_name, "id": response.id, "headers": dict(headers),
            "outputs": outputs_of(response)}


async def grpc_infer(args, x):
    request = InferRequest(args["body_model"], [tensor(x, args["binary"])], request_id=args.get("id"), model_version=args.get("version"))
    sent = {"raw": len(request.to_grpc().raw_input_contents) == 1}
    client = InferenceGRPCClient(args["grpc"], retries=0, timeout=60)
    try:
        response = await client.infer(request)
    finally:
        await client.close()
    return {"sent": sent, "model_name": response.model_name, "model_version": response.model_version, "id": response.id,
            "outputs": outputs_of(response)}


async def health(args, _):
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    grpc = InferenceGRPCClient(args["grpc"], retries=0, timeout=60)
    try:
        return {
            "rest": {"live": await rest.is_server_live(args["url"]), "ready": await rest.is_server_ready(args["url"]),
                     "model": await rest.is_model_ready(args["url"], args["model"]), "missing": await rest.is_model_ready(args["url"], "no_such_model")},
            "grpc": {"live": await grpc.is_server_live(), "ready": await grpc.is_server_ready(),
                     "model": await grpc.is_model_ready(args["model"]), "missing": await grpc.is_model_ready("no_such_model")},
        }
    finally:
        await rest.close()
        await grpc.close()


async def v1(args, x):
    """KServe's V1 protocol (the SDK's default): readiness, a predict of the rows, a bad one, a missing model."""
    client = InferenceRESTClient(RESTConfig(protocol="v1", retries=0, timeout=60))
    headers = {"authorization": f"Bearer {args['key']}"} if args.get("key") else None

    async def status_of(call):
        try:
            await call
            return 200
        except httpx.HTTPStatusError as error:
            return {"status": error.response.status_code, "body": error.response.json()}
    try:
        ready = await client.is_model_ready(args["url"], args["model"], headers=headers)
        result = await client.infer(args["url"], {"instances": x.tolist()}, model_name=args["model"], headers=headers)
        bad = await status_of(client.infer(args["url"], {"instances": [[1, 2]]}, model_name=args["model"], headers=headers))
        missing = await status_of(client.is_model_ready(args["url"], "no_such_model", headers=headers))
    finally:
        await client.close()
    return {"ready": ready, "predictions": result["predictions"], "bad": bad, "missing": missing}


CALLS = {"rest_infer": rest_infer, "grpc_infer": grpc_infer, "health": health, "v1": v1}

if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    x = np.asarray(arguments.get("x", [[0, 0, 0, 0]]), np.float32)
    print(json.dumps(asyncio.run(CALLS[arguments["call"]](arguments, x))))
