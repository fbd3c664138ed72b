"""Test inputs for each fixture model, and the reference outputs from ONNX Runtime's Python API."""
import numpy as np
import onnxruntime


def iris_rows(n=6):
    from sklearn.datasets import load_iris

    x, _ = load_iris(return_X_y=True)
    return x[::25][:n].astype(np.float32)


def inputs_for(model):
    """The input arrays (name -> numpy) for one fixture model."""
    rng = np.random.default_rng(42)
    if model in ("iris_mlp", "iris_logreg"):
        return {"X": iris_rows()}
    if model == "diabetes_linreg":
        from sklearn.datasets import load_diabetes

        return {"X": load_diabetes(return_X_y=True)[0][:4].astype(np.float32)}
    if model == "cnn":
        from sklearn.datasets import load_digits

        return {"x": (load_digits().images[:5] / 16.0).astype(np.float32)[:, None]}
    if model == "efficientnet_lite0":
        import images

        return {"input": np.concatenate([images.preprocess(images.sample_image_path(n)) for n in ("china.jpg", "flower.jpg")])}
    if model == "silero_vad":
        t = np.arange(4 * 576) / 16000.0
        audio = (0.5 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)
        return {"input": audio.reshape(4, 576), "h": np.zeros((1, 1, 128), np.float32), "c": np.zeros((1, 1, 128), np.float32)}
    if model == "minilm":
        ids = np.array([[101, 1037, 2158, 2003, 5983, 2833, 1012, 102, 0, 0], [101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 102]], np.int64)
        return {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64), "token_type_ids": np.zeros_like(ids)}
    raise KeyError(model)


def reference(path, inputs):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))
