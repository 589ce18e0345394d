"""Speech recognition, in a room of its own: Whisper passes over a stream's speech with words committed once they
settle (incremental: IncrementalASR, the agreement rule in agreement), a whole file transcribed as faster-whisper's
own transcribe() does it (whole_file: WholeFileASR), both behind the `Transcriber` protocol the pipeline types
against (transcriber); which language is spoken, identified and followed over time (language); the bounded Whisper
call (whisper_pass), the VAD (vad), words (words) and the word and character error rates (metrics) beside them."""

from speech.agreement import agreed_prefix_length
from speech.incremental import IncrementalASR, PassPacing
from speech.metrics import character_error_rate, error_rate, word_error_rate
from speech.transcriber import AsrUpdate, Transcriber
from speech.whisper_pass import transcribe_options
from speech.whole_file import WholeFileASR
from speech.words import normalise_text, normalise_word

__all__ = ["AsrUpdate", "IncrementalASR", "PassPacing", "Transcriber", "WholeFileASR", "agreed_prefix_length",
           "character_error_rate", "error_rate", "normalise_text", "normalise_word", "transcribe_options",
           "word_error_rate"]
