export YUNMO_API_KEY=$(cat yunmo-data/bootstrap-admin.key)
yunmo tenants create acme --limits '{"requests_per_second": 20, "requests_burst": 40, "tokens_per_minute": 20000, "monthly_tokens": 1000000}'
yunmo keys create --tenant acme --scope models:write --scope models:read --scope infer   # prints the key once
yunmo keys ls --tenant acme
yunmo models push iris.onnx --name iris --config '{"labels": ["setosa", "versicolor", "virginica"], "price": {"per_request": 0.001, "per_compute_second": 0.01}}'
curl -X PUT localhost:8080/api/v1/models/iris/sharing -H "Authorization: Bearer $YUNMO_API_KEY" -H 'Content-Type: application/json' -d '{"tenants": ["acme"]}'
yunmo usage --group-by model
