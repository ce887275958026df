"""A small real HTTP server on 127.0.0.1 speaking the OpenAI wire format (a unit-test fake).

Deterministic: a prompt's tokens are its words (with their leading space), each with a
log-probability hashed from the text before it, and a reply is hashed from the prompt
and the model name, so a retried request gets the same answer as the first. Knobs:
`key` (401 without it, echoing the key it got, as some servers do), `prompt_logprobs`
(False: echo is ignored, as llama.cpp's server does), `die_after` (the server stops
after that many requests: connection refused from then on), `lm` (an in-process
`HFBackend`: prompt log-probabilities and greedy answers come from its real model and
tokenizer instead, a reference server for agreement with the hf backend).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TOKEN = re.compile(r"\s*\S+|\s+")


def tokens(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group()) for m in _TOKEN.finditer(text)]


def token_logprob(before: str, token: str) -> float:
    return -(int(hashlib.sha256((before + "\x00" + token).encode()).hexdigest()[:6], 16) % 500) / 100.0 - 0.01


def label_logprob(prompt: str, label: str) -> float:
    """What a client should sum: the tokens of prompt + label that overlap the label."""
    full, total = prompt + label, 0.0
    toks = tokens(full)
    for i, (start, tok) in enumerate(toks):
        end = toks[i + 1][0] if i + 1 < len(toks) else len(full)
        if end > len(prompt) and i > 0:
            total += token_logprob(full[:start], tok)
    return total


def reply_for(model: str, prompt: str) -> str:
    words = re.findall(r"[a-z]+", prompt.lower()) or ["nothing"]
    pick = int(hashlib.sha256((model + prompt).encode()).hexdigest()[:8], 16)
    return " ".join(words[(pick + k) % len(words)] for k in range(1 + pick % 3))


class FakeOpenAIServer:
    def __init__(self, model: str = "smol", port: int = 0, key: str | None = None, prompt_logprobs: bool = True,
                 die_after: int | None = None, max_model_len: int = 2048, lm=None) -> None:
        self.model, self.key, self.prompt_logprobs, self.lm = model, key, prompt_logprobs, lm
        self._lm_lock = threading.Lock()  # one forward pass at a time
        self.die_after, self.max_model_len = die_after, max_model_len
        self.requests: list[tuple[str, dict]] = []
        self.adapters: dict[str, str] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- requests ----------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = json.loads(h.rfile.read(length) or b"{}") if length else {}
        with self._lock:
            self.requests.append((h.path, body))
            n = len(self.requests)
        if self.die_after is not None and n > self.die_after:
            h.close_connection = True
            threading.Thread(target=self.stop, daemon=True).start()
            return  # nothing sent: the client sees a dropped connection, then refusals
        if self.key is not None and h.headers.get("authorization") != f"Bearer {self.key}":
            given = (h.headers.get("authorization") or "").removeprefix("Bearer ")
            return self._json(h, 401, {"error": {"message": f"Incorrect API key provided: {given}"}})
        path = h.path.split("?")[0]
        if path == "/version":
            return self._json(h, 200, {"version": "0.0.fake"})
        if path == "/v1/models":
            data = [{"id": self.model, "object": "model", "root": f"/models/{self.model}",
                     "max_model_len": self.max_model_len}]
            data += [{"id": name, "object": "model", "root": root, "parent": self.model}
                     for name, root in self.adapters.items()]
            return self._json(h, 200, {"object": "list", "data": data})
        if path == "/v1/load_lora_adapter":
            if body.get("lora_name") in self.adapters:
                return self._json(h, 400, {"error": {"message": "The lora adapter has already been loaded."}})
            self.adapters[body["lora_name"]] = body["lora_path"]
            return self._text(h, 200, "Success")
        model = body.get("model")
        if path in ("/v1/completions", "/v1/chat/completions") and model not in (self.model, *self.adapters):
            return self._json(h, 404, {"error": {"message": f"The model `{model}` does not exist."}})
        if path == "/v1/completions":
            return self._completions(h, body)
        if path == "/v1/chat/completions":
            prompt = "\n".join(m["content"] for m in body["messages"])
            return self._generate(h, body, prompt, chat=True)
        return self._json(h, 404, {"error": {"message": f"no route {path}"}})

    def _completions(self, h, body):
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if not body.get("echo"):
            return self._generate(h, body, prompts[0], chat=False)
        choices = []
        for i, prompt in enumerate(prompts):
            toks = tokens(prompt)
            lp = None
            if self.lm is not None:
                toks, lp = self._lm_logprobs(prompt)
            elif self.prompt_logprobs and body.get("logprobs") is not None:
                lp = {"tokens": [t for _, t in toks] + [" x"],
                      "token_logprobs": [None] + [token_logprob(prompt[:s], t) for s, t in toks[1:]] + [-0.5],
                      "text_offset": [s for s, _ in toks] + [len(prompt)], "top_logprobs": None}
            choices.append({"index": i, "text": prompt + " x", "logprobs": lp, "finish_reason": "length"})
        n_prompt = sum(len(tokens(p)) for p in prompts)
        return self._json(h, 200, {"object": "text_completion", "model": body["model"], "choices": choices,
                                   "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(prompts),
                                             "total_tokens": n_prompt + len(prompts)}})

    def _lm_logprobs(self, prompt: str):
        """Echoed tokens of `prompt` with their log-probabilities under the real model."""
        import torch

        enc = self.lm.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], [start for start, _ in enc["offset_mapping"]]
        with self._lm_lock, torch.inference_mode():
            logits = self.lm.torch_model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        values = [None] + [float(logp[k - 1, ids[k]]) for k in range(1, len(ids))]
        toks = [(o, self.lm.tokenizer.decode([t])) for o, t in zip(offsets, ids)]
        return toks, {"tokens": [t for _, t in toks] + ["x"], "token_logprobs": values + [-0.5],
                      "text_offset": offsets + [len(prompt)], "top_logprobs": None}

    def _generate(self, h, body, prompt: str, chat: bool):
        if self.lm is not None and not chat:
            with self._lm_lock:
                [g] = self.lm.generate([prompt], max_new_tokens=int(body.get("max_tokens") or 16), batch_size=1)
            words, n_prompt, n_new = ([g.text] if g.text else []), g.prompt_tokens, g.completion_tokens
        else:
            words = reply_for(body["model"], prompt).split()[: max(1, int(body.get("max_tokens") or 16))]
            n_prompt, n_new = len(tokens(prompt)), len(words)
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_new, "total_tokens": n_prompt + n_new}
        text = " ".join(words)
        if not body.get("stream"):
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}} if chat
                      else {"index": 0, "text": text})
            return self._json(h, 200, {"choices": [{**choice, "finish_reason": "stop"}], "usage": usage})
        events = []
        for k, word in enumerate(words):
            piece = word if k == 0 else " " + word
            choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
            events.append({"choices": [choice]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"choices": [], "usage": usage})
        payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._text(h, 200, payload, "text/event-stream")

    @staticmethod
    def _json(h, status: int, obj) -> None:
        FakeOpenAIServer._text(h, status, json.dumps(obj), "application/json")

    @staticmethod
    def _text(h, status: int, text: str, ctype: str = "text/plain") -> None:
        data = text.encode()
        h.send_response(status)
        h.send_header("content-type", ctype)
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
