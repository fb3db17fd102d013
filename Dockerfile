# BackApp: one image for the web process and the scheduler (choose with the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends tar zstd \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/backapp --create-home backapp

WORKDIR /opt/backapp
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .

USER backapp
WORKDIR /var/lib/backapp
EXPOSE 3000
# `backapp web` serves UI + API; run `backapp scheduler` in a second container.
# `backapp serve` runs both in one process (the embedded default, SQLite under ./data).
CMD ["backapp", "serve", "--host", "0.0.0.0", "--port", "3000"]
