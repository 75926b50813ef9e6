# One image for the API and the workers. PyPI's torch wheel for Linux is the CUDA build, which the
# GPU worker needs; set TORCH_INDEX_URL to PyTorch's CPU wheel index for slim CPU-only images.
FROM python:3.11-slim
ARG TORCH_INDEX_URL=""
RUN apt-get update && apt-get install -y --no-install-recommends dcmtk default-jre-headless fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/echocxr
COPY pyproject.toml constraints-cpu.txt README.md ./
COPY service service
COPY model model
COPY workers workers
COPY dicom dicom
COPY clinical_eval clinical_eval
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX_URL"; \
    else \
        pip install --no-cache-dir torch==2.13.0; \
    fi \
    && pip install --no-cache-dir .
RUN useradd --system --home /var/lib/echocxr echocxr && mkdir -p /var/lib/echocxr \
    && chown echocxr /var/lib/echocxr
USER echocxr
