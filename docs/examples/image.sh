curl -X POST localhost:8080/v2/models/imagenet/infer -H "Authorization: Bearer $YUNMO_API_KEY" -H 'Content-Type: image/jpeg' --data-binary @yunmo-data/images/china.jpg
