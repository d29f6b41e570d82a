// Typeset the math that pymdownx.arithmatex (generic mode) leaves in `.arithmatex` elements:
// `\( ... \)` inline, `\[ ... \]` displayed. `document$` is mkdocs-material's page observable, so this
// also runs after instant navigation.
document$.subscribe(function () {
  document.querySelectorAll(".arithmatex").forEach(function (element) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  });
});
