package proxy

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// limitListener answers connections beyond max with a 503 and closes them,
// so a guest that opens thousands gets a clear refusal and the proxy's
// memory stays bounded (each connection holds two goroutines and buffers).
func limitListener(l net.Listener, max int) net.Listener {
	return &limited{Listener: l, sem: make(chan struct{}, max)}
}

type limited struct {
	net.Listener
	sem chan struct{}
}

var busy = func() string {
	body := "keystone: this sandbox has too many connections open through its proxy; close some first\n"
	return fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

func (l *limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &counted{Conn: c, release: func() { <-l.sem }}, nil
		default:
			go func() {
				io.WriteString(c, busy)
				c.Close()
			}()
		}
	}
}

type counted struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *counted) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite passes a half-close on to the guest's connection (a tunnel
// whose far end finished sending).
func (c *counted) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
