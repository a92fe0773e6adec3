"""The REST API of a director (FastAPI, served by uvicorn inside the daemon): installed as xdplb.api."""
