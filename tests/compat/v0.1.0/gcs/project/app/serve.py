import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), H).serve_forever()
