// The web chat page served by `dsinfer serve` at `/` (docs/server.md, "Web chat"): the files
// of src/server/web/, compiled into the binary by cmake/embed_web.cmake. The page is a plain
// client of the OpenAI endpoints; nothing here knows about models.
#pragma once

#include <cstddef>
#include <string_view>

namespace dsinfer::server {

struct WebAsset {
  std::string_view path;          // URL path: "/" for index.html, else "/NAME"
  std::string_view content_type;  // e.g. "text/javascript; charset=utf-8"
  std::string_view etag;          // quoted, e.g. "\"0123456789abcdef\"" (SHA-256 prefix)
  std::string_view body;          // the file's bytes
};

// The generated table (web_assets_data.cc in the build tree).
extern const WebAsset kWebAssets[];
extern const size_t kWebAssetCount;

// The asset served at `path`, or nullptr.
const WebAsset* FindWebAsset(std::string_view path);

// The Content-Security-Policy every page response carries: the page's own scripts, styles,
// images and API calls only (no inline code, no other origin, no framing).
inline constexpr std::string_view kWebCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace dsinfer::server
