curl -X POST localhost:8080/api/v1/models -H "Authorization: Bearer $YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{"name": "flowers", "task": "classification"}'
curl -X POST 'localhost:8080/api/v1/models/flowers/versions?config=%7B%22instance_count%22%3A2%7D' -H "Authorization: Bearer $YUNMO_API_KEY" --data-binary @iris.onnx
curl -X POST localhost:8080/v2/models/flowers/infer -H "Authorization: Bearer $YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}'
