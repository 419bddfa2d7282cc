{
  "targets": [
    {
      "target_name": "vhost_user",
      "sources": ["native/vhost_user.c"],
      "defines": ["_GNU_SOURCE", "NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
