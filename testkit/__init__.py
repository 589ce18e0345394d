"""What the tests and the benchmarks share: the real data's paths, fakes of the models, servers on loopback, media
made from the real clips, the RTSP and WebRTC peers, and the reliability routines. Not part of the installed
package; import it from the repository root (pytest run from there, or a benchmark that puts the root on sys.path)."""
