"""Text and pictures only: Markdown, CSV pivots and charts of tables handed in; nothing here measures."""
