package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeRecipesUseFilesOfTheRepository: the shell recipes in the README
// work in a fresh clone: they name no file outside it, and every file of
// the repository they name exists.
func TestReadmeRecipesUseFilesOfTheRepository(t *testing.T) {
	const root = "../.."
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```(?:sh|bash|console)\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("no shell blocks found")
	}
	repoDirs := []string{"testdata/", "configs/", "cmd/", "dispatch/", "serialcb/", "asyncloop/", "docs/"}
	for _, b := range blocks {
		for _, line := range strings.Split(b[1], "\n") {
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i] // a comment
			}
			for _, word := range strings.Fields(line) {
				word = strings.Trim(word, `"'();`)
				word = word[strings.LastIndex(word, "=")+1:] // --file=PATH, link=PATH
				if strings.HasPrefix(word, "../") {
					t.Errorf("README recipe names %q, outside the repository: %s", word, line)
					continue
				}
				word = strings.TrimPrefix(word, "./")
				for _, d := range repoDirs {
					if strings.HasPrefix(word, d) && !strings.ContainsAny(word, "*$<>{}") {
						if _, err := os.Stat(filepath.Join(root, strings.TrimSuffix(word, "/..."))); err != nil {
							t.Errorf("README recipe names %q, which is not in the repository: %s", word, line)
						}
					}
				}
			}
		}
	}
}
