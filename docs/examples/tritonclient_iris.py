import os, numpy as np, tritonclient.http as httpclient
key = os.environ["YUNMO_API_KEY"]
client = httpclient.InferenceServerClient("127.0.0.1:8080")
x = httpclient.InferInput("X", [1, 4], "FP32"); x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))
print(client.infer("iris", [x], headers={"Authorization": f"Bearer {key}"}).as_numpy("probabilities"))
