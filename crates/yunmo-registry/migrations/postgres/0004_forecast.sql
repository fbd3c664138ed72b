-- Usage by model over time, for demand forecasts (hourly series per model).
CREATE INDEX usage_model_at ON usage_events(model, at_ms);
