FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY persistence persistence
COPY gateway gateway
COPY workers workers
COPY migrations migrations
COPY ops ops
RUN pip install --no-cache-dir . && useradd --create-home stoflow
USER stoflow
EXPOSE 8000
CMD ["stoflow", "api", "--host", "0.0.0.0", "--port", "8000"]
