import os, numpy as np, tritonclient.grpc as grpcclient
headers = {"authorization": f"Bearer {os.environ['YUNMO_API_KEY']}"}
client = grpcclient.InferenceServerClient("127.0.0.1:8081")
x = grpcclient.InferInput("X", [1, 4], "FP32"); x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
client.infer("iris", [x], headers=headers)
config = client.get_model_config("iris", headers=headers, as_json=True)["config"]
print(config["input"], config.get("max_batch_size", 0))
stats = client.get_inference_statistics("iris", headers=headers, as_json=True)["model_stats"][0]
print(stats["name"], stats["inference_count"], stats["inference_stats"]["success"]["count"])
