"""The value report: value.json (value), plots (plots) and the Markdown/HTML/PDF renderer (render).
"""
