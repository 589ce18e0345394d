"""The server: who may do what (access), the running streams and their fan-out (hub), the dashboard's files
(static), the protocol on the port (handler) and the server's life (serving). server.py is its door."""
