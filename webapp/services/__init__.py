"""The rules. Each public function is one use case and ends in one commit."""
