// Added to FerretDB v1.24.2's SQLite backend by labelmesh's deploy/local/ferretdb.sh (see patch_id_in there).

package sqlite

import (
	"fmt"
	"strings"

	"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
	"github.com/FerretDB/FerretDB/internal/handler/sjson"
	"github.com/FerretDB/FerretDB/internal/types"
)

// maxPushedIDs keeps a pushed-down `$in` far below SQLite's limit on bound parameters.
const maxPushedIDs = 1000

// idInWhere turns `{_id: {$in: [...]}}` whose values are all strings or ObjectIDs into
// `WHERE <_id column> IN (?, ...)`, which SQLite answers through the `_id` index. Anything else gives
// no clause. The handler applies the whole filter to what comes back either way, so a clause only
// narrows what is read, never what matches.
func idInWhere(d *types.Document) (string, []any) {
	if d.Len() != 1 {
		return "", nil
	}
	v, err := d.Get("$in")
	if err != nil {
		return "", nil
	}
	arr, ok := v.(*types.Array)
	if !ok || arr.Len() == 0 || arr.Len() > maxPushedIDs {
		return "", nil
	}
	args := make([]any, 0, arr.Len())
	for i := 0; i < arr.Len(); i++ {
		e, _ := arr.Get(i)
		switch e.(type) {
		case string, types.ObjectID:
			b, err := sjson.MarshalSingleValue(e)
			if err != nil {
				return "", nil
			}
			args = append(args, string(b))
		default:
			return "", nil
		}
	}
	return fmt.Sprintf(` WHERE %s IN (?%s)`, metadata.IDColumn, strings.Repeat(", ?", len(args)-1)), args
}
