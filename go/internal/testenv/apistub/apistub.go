// Package apistub is a stand-in for the Anthropic Messages API, the OpenAI
// Responses API and the Gemini API's generateContent on loopback, for tests that run a real agent through
// the sandbox's proxy: it answers every message with one fixed text,
// streamed as server-sent events when asked, and records the requests'
// headers. Responses' WebSocket transport is answered 404, so Codex falls
// back to HTTPS. Test-only; it never leaves loopback.
package apistub

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Server is a TLS Messages API stub.
type Server struct {
	*httptest.Server
	Answer string
	mu     sync.Mutex
	seen   []Request
}

// Request is what the stub saw of one request.
type Request struct {
	Method, Path string
	Header       http.Header
	Stream       bool
}

// New starts a stub answering answer over TLS (its certificate: Certificate()).
func New(answer string) *Server {
	s := &Server{Answer: answer}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// Requests returns what the stub saw, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.seen...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	json.Unmarshal(body, &req)
	s.mu.Lock()
	s.seen = append(s.seen, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Stream: req.Stream})
	s.mu.Unlock()
	model := req.Model
	if model == "" {
		model = "claude-stub"
	}
	switch {
	case strings.HasSuffix(r.URL.Path, ":streamGenerateContent"):
		w.Header().Set("Content-Type", "text/event-stream")
		b, _ := json.Marshal(s.gemini())
		fmt.Fprintf(w, "data: %s\r\n\r\n", b)
	case strings.HasSuffix(r.URL.Path, ":generateContent"):
		writeJSON(w, s.gemini())
	case strings.HasSuffix(r.URL.Path, ":countTokens"):
		writeJSON(w, map[string]any{"totalTokens": 5})
	case strings.HasSuffix(r.URL.Path, "/responses") && r.Method == http.MethodPost:
		s.responses(w)
	case strings.HasSuffix(r.URL.Path, "/count_tokens"):
		writeJSON(w, map[string]any{"input_tokens": 10})
	case strings.HasSuffix(r.URL.Path, "/v1/messages") && req.Stream:
		s.stream(w, model)
	case strings.HasSuffix(r.URL.Path, "/v1/messages"):
		writeJSON(w, s.message(model))
	default:
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]any{"type": "error", "error": map[string]any{"type": "not_found_error", "message": "stub: no " + r.URL.Path}})
	}
}

func (s *Server) message(model string) map[string]any {
	return map[string]any{
		"id": "msg_stub", "type": "message", "role": "assistant", "model": model,
		"content":     []any{map[string]any{"type": "text", "text": s.Answer}},
		"stop_reason": "end_turn", "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": 10, "output_tokens": 5},
	}
}

// stream writes the Messages API's event sequence, flushing each event.
func (s *Server) stream(w http.ResponseWriter, model string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	start := s.message(model)
	start["content"], start["stop_reason"] = []any{}, nil
	events := []struct {
		name string
		data any
	}{
		{"message_start", map[string]any{"type": "message_start", "message": start}},
		{"content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}}},
		{"content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": s.Answer}}},
		{"content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}},
		{"message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn", "stop_sequence": nil}, "usage": map[string]any{"output_tokens": 5}}},
		{"message_stop", map[string]any{"type": "message_stop"}},
	}
	for _, e := range events {
		b, _ := json.Marshal(e.data)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.name, b)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// gemini is a GenerateContentResponse holding the answer.
func (s *Server) gemini() map[string]any {
	return map[string]any{
		"candidates": []any{map[string]any{"index": 0, "finishReason": "STOP",
			"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": s.Answer}}}}},
		"usageMetadata": map[string]any{"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
	}
}

// responses writes the Responses API's event sequence for one message.
func (s *Server) responses(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	msg := map[string]any{"type": "message", "id": "msg_stub", "status": "completed", "role": "assistant",
		"content": []any{map[string]any{"type": "output_text", "text": s.Answer, "annotations": []any{}}}}
	inProgress := map[string]any{"type": "message", "id": "msg_stub", "status": "in_progress", "role": "assistant", "content": []any{}}
	usage := map[string]any{"input_tokens": 5, "input_tokens_details": map[string]any{"cached_tokens": 0},
		"output_tokens": 3, "output_tokens_details": map[string]any{"reasoning_tokens": 0}, "total_tokens": 8}
	events := []map[string]any{
		{"type": "response.created", "response": map[string]any{"id": "resp_stub", "object": "response", "status": "in_progress", "output": []any{}}},
		{"type": "response.output_item.added", "output_index": 0, "item": inProgress},
		{"type": "response.output_text.delta", "item_id": "msg_stub", "output_index": 0, "content_index": 0, "delta": s.Answer},
		{"type": "response.output_item.done", "output_index": 0, "item": msg},
		{"type": "response.completed", "response": map[string]any{"id": "resp_stub", "object": "response", "status": "completed", "output": []any{msg}, "usage": usage}},
	}
	for _, e := range events {
		b, _ := json.Marshal(e)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e["type"], b)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
