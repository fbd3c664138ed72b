yunmo models push iris.onnx --name fraud --task classification   # version 1
yunmo models push iris.onnx --name fraud                         # version 2, the canary
yunmo models route fraud v1=90 v2=10 --guard --guard-min-requests 50   # 10% to v2, rolled back if it fails
for i in $(seq 20); do yunmo infer fraud --input '{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[6.7,3.0,5.2,2.3]}]}' >/dev/null; done
yunmo models route fraud          # how v1 and v2 compare
yunmo models promote fraud v2     # every request to v2
curl -s localhost:8080/api/v1/models/fraud -H "Authorization: Bearer $YUNMO_API_KEY"   # "version_policy": {"kind": "pinned", "version": 2}
