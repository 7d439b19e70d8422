"""lrr-service: the FastAPI/uvicorn streaming server around the core LRR engine."""
